// Worker threads start from JavaScript: register tsx in this thread (the API is per thread, and harmless when the
// parent's --import already did), then load the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./decode-worker.ts');
