// Preloaded into the server the scale bench starts (`node --expose-gc --import …`): SIGUSR2 runs a full
// garbage collection and answers `GC-DONE` on stderr, so that memory is read after a collection on both
// sides of the comparison (bare Baileys' worker collects on command).
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  globalThis.gc?.();
  process.stderr.write('GC-DONE\n');
});
