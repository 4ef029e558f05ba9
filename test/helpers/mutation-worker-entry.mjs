// Worker threads start from JavaScript: register tsx in this thread (the API is per thread), then load the
// TypeScript worker, as src/imaging/codecs/decode-worker-entry.mjs does.
import { register } from 'tsx/esm/api';

register();
await import('./mutation-worker.ts');
