# One image for every Teleread process: `bin/teleread api`, `worker`, `migrate`, …
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first, so editing the source does not reinstall them. tsx runs the TypeScript
# source directly and is a runtime dependency, so --omit=dev keeps everything the app needs;
# sharp and esbuild bring their prebuilt linux binaries through the lock file's optional packages.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# The source stays owned by root: the app runs as `node` and cannot rewrite its own code.
# ./data is the one writable place, for a file:// STORAGE_URL.
COPY . .
RUN mkdir -p /app/data && chown node:node /app/data

USER node
EXPOSE 3000
CMD ["bin/teleread", "api"]
