// Entry of the split reader's thread (split-reader.ts): lets it run the TypeScript
// sources whatever the host process was started with (tsx's loader, registered here).
import { register } from 'tsx/esm/api';

register();
await import('./split-reader-thread.ts');
