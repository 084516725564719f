// The plugin side of the process plugin bench (cli/benches/process.rs).
'use strict';
require('../plugins/node').serve({ inc(x) { return x + 1; } }, { name: 'bench' });
