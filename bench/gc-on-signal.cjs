// Preloaded into every Node server the benchmark starts (rollcall, relay, Yjs alike): SIGUSR2
// runs a full garbage collection, so that "memory per connection" measures what is held, not
// garbage a collection has not reached yet.
process.on('SIGUSR2', () => global.gc?.());
