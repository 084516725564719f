// An oxiida process plugin in Node.js: run it with
//   oxiida run --plugin exec:node=plugins/node/examples/tools.js workflow.ox
// and call its functions after `require fib, fetch;` (or `from tools`).
'use strict';
const { serve } = require('..');

serve({
  // A plain function: its return value is the call's result.
  fib(n) {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`fib needs a whole number >= 0, not ${n}`);
    let [a, b] = [0, 1];
    for (let i = 0; i < n; i++) [a, b] = [b, a + b];
    return a;
  },
  // An async function is awaited; `this.signal` aborts if oxiida cancels the call.
  async fetch(url) {
    const response = await fetch(url, { signal: this.signal });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return await response.text();
  },
  // Arrays and objects cross as oxiida Arrays and Maps.
  stats(xs) {
    const sum = xs.reduce((a, b) => a + b, 0);
    return { n: xs.length, sum, mean: xs.length ? sum / xs.length : null };
  },
}, { name: 'tools', version: '0.1.0' });
