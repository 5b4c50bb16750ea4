// Playwright runs the built app (target/debug/tokenless, built by `cargo test`; the client by
// `cargo leptos build --frontend-only`) on its own port, with the embedded demo upstream's test
// controls on the next port and drives a headless Chromium against it. The browser is the system one that
// scripts/setup.sh found (TOKENLESS_CHROMIUM), or Playwright's own when that says "playwright".
import { defineConfig, devices } from '@playwright/test';
import * as path from 'path';

const port = Number(process.env.TOKENLESS_E2E_PORT ?? 3100);
const baseURL = `http://127.0.0.1:${port}`;
// tests/support.ts reads the same variables.
process.env.TOKENLESS_E2E_CONTROLS = `http://127.0.0.1:${port + 1}`;
// A fixed sealing key, so that tests can age the access token inside the browser's cookie
// instead of waiting for it to expire. Test-only: never use it anywhere else.
const sessionKeys = '9:sRzWq3d3mV0m6rj3Q9nq2QJ3c8kqC0yG0p1w6Hk6u4E=';
process.env.TOKENLESS_E2E_KEYS = sessionKeys;
const chromium = process.env.TOKENLESS_CHROMIUM ?? '/usr/bin/chromium';
const root = path.resolve(__dirname, '..');
const binary = process.env.TOKENLESS_E2E_BINARY ?? path.join(root, 'target', 'debug', 'tokenless');

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: process.env.CI ? [['list']] : [['list'], ['html', { open: 'never' }]],
  use: {
    baseURL,
    trace: 'retain-on-failure',
    ...devices['Desktop Chrome'],
    launchOptions:
      chromium === 'playwright'
        ? {}
        : {
            executablePath: chromium,
            args: [
              '--no-sandbox',
              '--disable-gpu',
              '--disable-quic',
              '--disable-background-networking',
              '--disable-component-update',
              '--disable-sync',
              '--no-first-run',
            ],
          },
  },
  webServer: {
    command: binary,
    cwd: root,
    url: `${baseURL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      TOKENLESS_SERVER__ADDRESS: `127.0.0.1:${port}`,
      TOKENLESS_DEMO__TEST_CONTROLS: 'true',
      TOKENLESS_DEMO__CONTROL_ADDRESS: `127.0.0.1:${port + 1}`,
      TOKENLESS_DEMO__FAST_HASHING: 'true',
      // A fresh demo upstream per run: accounts the tests register never reach the developer's.
      TOKENLESS_DEMO__DATABASE: ':memory:',
      TOKENLESS_SESSION__KEYS: sessionKeys,
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      RUST_LOG: process.env.RUST_LOG ?? 'info',
    },
  },
});
