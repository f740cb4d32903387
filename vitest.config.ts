import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Native addons and worker threads do not mix well; forks isolate each file in a process.
    pool: 'forks',
    testTimeout: 60_000,
  },
});
