// Playwright runs the built app (target/debug/tokenless, built by `cargo test`; the client by
// `cargo leptos build --frontend-only`) on its own port, with the embedded demo upstream's test
// controls on the next port and drives a headless Chromium against it. The browser is the system one that
// scripts/setup.sh found (TOKENLESS_CHROMIUM), or Playwright's own when that says "playwright".
import { defineConfig, devices } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const port = Number(process.env.TOKENLESS_E2E_PORT ?? 3100);
const baseURL = `http://127.0.0.1:${port}`;
// tests/support.ts reads the same variables.
process.env.TOKENLESS_E2E_CONTROLS = `http://127.0.0.1:${port + 1}`;
// A fixed sealing key, so that tests can age the access token inside the browser's cookie
// instead of waiting for it to expire. Test-only: never use it anywhere else.
const sessionKeys = '9:sRzWq3d3mV0m6rj3Q9nq2QJ3c8kqC0yG0p1w6Hk6u4E=';
process.env.TOKENLESS_E2E_KEYS = sessionKeys;
process.env.TOKENLESS_E2E_PROVIDER = `http://127.0.0.1:${port + 30}`;
// Each app its own refresh memory file (the default store), in a folder new for each run (every
// worker reads this file again: the folder travels in the environment).
const memory = process.env.TOKENLESS_E2E_MEMORY ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenless-e2e-'));
process.env.TOKENLESS_E2E_MEMORY = memory;
const chromium = process.env.TOKENLESS_CHROMIUM ?? '/usr/bin/chromium';
const root = path.resolve(__dirname, '..');
const binary = process.env.TOKENLESS_E2E_BINARY ?? path.join(root, 'target', 'debug', 'tokenless');
// The client's files (wasm, JS glue, CSS) the app serves; another build's for a comparison
// (bench/hydration.sh).
const siteRoot = process.env.TOKENLESS_E2E_SITE_ROOT ?? path.join(root, 'target', 'site');

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
  // The default project runs every spec against the demo upstream's OAuth 2.0 shape; the two API
  // projects run api-shapes.spec.ts against the same binary with the demo in seed 003's and seed
  // 002's shapes (fronted through the [upstream.http_api] presets), each on its own ports. The
  // oidc project runs oidc.spec.ts against the binary signing in at a real OpenID provider
  // (node-oidc-provider, end2end/oidc/provider.mjs) started here too.
  projects: [
    { name: 'oauth2', testIgnore: /(api-shapes|oidc)\.spec\.ts/ },
    { name: 'seed003', testMatch: /api-shapes\.spec\.ts/, use: { baseURL: `http://127.0.0.1:${port + 10}` } },
    { name: 'seed002', testMatch: /api-shapes\.spec\.ts/, use: { baseURL: `http://127.0.0.1:${port + 20}` } },
    { name: 'oidc', testMatch: /oidc\.spec\.ts/, use: { baseURL: `http://127.0.0.1:${port + 31}` } },
  ],
  webServer: [
    server(port, 'oauth2'),
    server(port + 10, 'seed003'),
    server(port + 20, 'seed002'),
    provider(port + 30, port + 31),
    oidcApp(port + 31, port + 30),
  ],
});

/** The OpenID provider on `at`, its client's URIs under the app on `app`. */
function provider(at: number, app: number) {
  return {
    command: `node ${path.join('end2end', 'oidc', 'provider.mjs')}`,
    cwd: root,
    url: `http://127.0.0.1:${at}/.well-known/openid-configuration`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'ignore' as const,
    stderr: 'pipe' as const,
    env: { OIDC_PORT: String(at), OIDC_APP_ORIGIN: `http://127.0.0.1:${app}` },
  };
}

/** The app on `at`, signing people in at the provider on `providerAt`. */
function oidcApp(at: number, providerAt: number) {
  const issuer = `http://127.0.0.1:${providerAt}`;
  return {
    command: binary,
    cwd: root,
    url: `http://127.0.0.1:${at}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe' as const,
    stderr: 'pipe' as const,
    env: {
      TOKENLESS_SERVER__ADDRESS: `127.0.0.1:${at}`,
      TOKENLESS_SESSION__SQLITE_PATH: path.join(memory, `refresh-memory-${at}.sqlite3`),
      TOKENLESS_UPSTREAM__KIND: 'oidc',
      TOKENLESS_UPSTREAM__BASE_URL: issuer,
      TOKENLESS_UPSTREAM__OIDC__ISSUER: issuer,
      TOKENLESS_UPSTREAM__OIDC__CLIENT_ID: 'tokenless',
      TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET: 'tokenless-oidc-test-secret',
      TOKENLESS_UPSTREAM__OIDC__SCOPES: 'openid profile email offline_access roles',
      TOKENLESS_UPSTREAM__OIDC__ROLES_CLAIM: '/roles',
      TOKENLESS_UPSTREAM__OIDC__PROVIDER_NAME: 'Test ID',
      TOKENLESS_SESSION__KEYS: sessionKeys,
      LEPTOS_SITE_ROOT: siteRoot,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
    },
  };
}

/** The app on `at`, its demo upstream in `shape`, the test controls on `at + 1`. */
function server(at: number, shape: string) {
  return {
    command: binary,
    cwd: root,
    url: `http://127.0.0.1:${at}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe' as const,
    stderr: 'pipe' as const,
    env: {
      TOKENLESS_SERVER__ADDRESS: `127.0.0.1:${at}`,
      TOKENLESS_SESSION__SQLITE_PATH: path.join(memory, `refresh-memory-${at}.sqlite3`),
      TOKENLESS_DEMO__SHAPE: shape,
      TOKENLESS_DEMO__TEST_CONTROLS: 'true',
      TOKENLESS_DEMO__CONTROL_ADDRESS: `127.0.0.1:${at + 1}`,
      TOKENLESS_DEMO__FAST_HASHING: 'true',
      // A fresh demo upstream per run: accounts the tests register never reach the developer's.
      TOKENLESS_DEMO__DATABASE: ':memory:',
      TOKENLESS_SESSION__KEYS: sessionKeys,
      LEPTOS_SITE_ROOT: siteRoot,
      RUST_LOG: process.env.RUST_LOG ?? (shape === 'oauth2' ? 'info' : 'warn'),
    },
  };
}
