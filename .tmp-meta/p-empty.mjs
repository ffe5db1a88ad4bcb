import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);
var o=1;export{o as x};
