// Benchmarks in the browser (not tests: `bash bench/hydration.sh` runs them against the release
// build). Same server set-up as the tests, specs from ./bench.
import { defineConfig } from '@playwright/test';
import base from './playwright.config';

export default defineConfig({ ...base, testDir: './bench', testMatch: '**/*.bench.ts', reporter: [['list']], timeout: 120_000 });
