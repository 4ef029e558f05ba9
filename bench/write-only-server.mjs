// The floor of the imaging ingest benchmark: a node:http server that writes each request body to a file of its
// own and answers, with no parsing, hashing, fsync, database or queue. What any Node server that stores uploads
// spends at least; bench/imaging.ts sends it the same requests it sends Teleread.
// Usage: node bench/write-only-server.mjs DIR PORT (prints "listening" once it accepts requests).
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const [dir, port] = process.argv.slice(2);
mkdirSync(dir, { recursive: true });
const server = http.createServer((req, res) => {
  const file = createWriteStream(path.join(dir, randomUUID()));
  req.pipe(file);
  const fail = (err) => {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  };
  req.on('error', fail);
  file.on('error', fail);
  file.on('finish', () => {
    res.writeHead(202, { 'content-type': 'application/json' });
    res.end('{"stored":true}');
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
