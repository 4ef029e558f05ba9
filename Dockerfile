# One image for every Teleread process: `bin/teleread api`, `worker`, `migrate`, …
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first, so editing the source does not reinstall them. tsx and its esbuild (which compiles the
# CLI, below) are runtime dependencies, so --omit=dev keeps everything the app needs;
# sharp and esbuild bring their prebuilt linux binaries through the lock file's optional packages.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# The source stays owned by root: the app runs as `node` and cannot rewrite its own code.
# ./data is the one writable place, for a file:// STORAGE_URL.
COPY . .
RUN mkdir -p /app/data && chown node:node /app/data
# bin/teleread runs a compiled copy of the sources that it keeps in node_modules/.cache (scripts/build-cli.mjs).
# The app cannot write there, so the copy is made now; the image's files keep their times, so it stays current.
RUN bin/teleread help >/dev/null

USER node
EXPOSE 3000
CMD ["bin/teleread", "api"]
