// A full V8 garbage collection, on request. The build lets go of a depth's float32 weights
// (tens to hundreds of MB of ArrayBuffers) before it opens an onnxruntime session over the written
// variant; V8 only frees them at its next collection, and the session's native allocations do not
// prompt one, so without this the build peaks with both (docs/checkpoints.md). `--expose-gc` set
// at run time exposes `gc` to contexts created after it (the way jest's leak detector gets it).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
