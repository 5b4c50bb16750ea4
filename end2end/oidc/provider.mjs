// A real OpenID Provider for Tokenless's tests: node-oidc-provider (certified), configured with
// one confidential client for Tokenless, refresh-token rotation on every use, test accounts,
// RP-initiated logout, revocation and back-channel logout. The tests start it themselves on a
// loopback port and read the first line it prints: `ready <issuer>`.
//
// Environment:
//   OIDC_PORT        port to listen on (0, the default: any free one)
//   OIDC_APP_ORIGIN  the Tokenless origin its redirect URIs live under (http://127.0.0.1:3000)
//   OIDC_CLIENT_SECRET the client secret (tokenless-oidc-test-secret)
//   OIDC_ACCESS_TTL  access token lifetime in seconds (300)
//   OIDC_PRINT_SIGNING_KEY=1  the ready line ends with ` key=<base64 PKCS#1 DER>`: the signing
//                    key, for tests that sign logout tokens the way this provider does
//
// GET /_test/counters answers what it saw: {"refreshes": refresh grants it honoured,
// "reuse": rotated refresh tokens presented again (each revokes its grant), "backchannel":
// back-channel logouts it delivered}. A test peer's own route, beside the provider's.
//
// Sign-in is the provider's own development form (any password; the login names an account
// below). Nothing here is for production: it is a test peer.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
// Its own in-memory adapter and cache, on a store big enough for a long test: the adapter's
// default store keeps the last 1,000 entries only, and under a ten-minute chaos run (every
// refresh adds two) it forgot sessions — a sign-out at the provider then sent no back-channel
// logout at all — and grants.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const ACCOUNTS = {
  dana: { name: 'Dana User', email: 'user@example.com', roles: ['user'] },
  ada: { name: 'Ada Admin', email: 'admin@example.com', roles: ['user', 'admin'] },
};

const appOrigin = (process.env.OIDC_APP_ORIGIN || 'http://127.0.0.1:3000').replace(/\/$/, '');
const port = Number(process.env.OIDC_PORT || 0);
const accessTtl = Number(process.env.OIDC_ACCESS_TTL || 300);

// The server exists first: its port (chosen by the system when 0) is part of the issuer.
const server = createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const store = new LRU({ maxSize: 10_000_000 });

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [
    {
      client_id: 'tokenless',
      client_secret: process.env.OIDC_CLIENT_SECRET || 'tokenless-oidc-test-secret',
      redirect_uris: [`${appOrigin}/auth/callback`],
      post_logout_redirect_uris: [`${appOrigin}/`, `${appOrigin}/login`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      backchannel_logout_uri: `${appOrigin}/auth/backchannel-logout`,
      backchannel_logout_session_required: true,
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email'], roles: ['roles'] },
  findAccount: async (_ctx, id) => {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  // Every refresh rotates: presenting a used refresh token is reuse (and revokes the grant).
  rotateRefreshToken: () => true,
  ttl: { AccessToken: accessTtl, IdToken: 3600, RefreshToken: 14 * 24 * 3600 },
  // Its outgoing requests (back-channel logout) refuse loopback addresses as an SSRF guard; the
  // app it calls in tests lives on loopback, so this test peer lets them through.
  fetch: (url, options) => {
    const { dispatcher: _ssrfGuard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  // Tokenless always sends its redirect_uri; never guess one.
  allowOmittingSingleRegisteredRedirectUri: false,
});
provider.proxy = false;
const counters = { refreshes: 0, reuse: 0, backchannel: 0 };
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params?.grant_type === 'refresh_token') counters.refreshes += 1;
});
provider.on('grant.error', (_ctx, err) => {
  if (`${err.error_detail ?? ''} ${err.message ?? ''}`.includes('already used')) counters.reuse += 1;
});
provider.on('backchannel.success', () => {
  counters.backchannel += 1;
});
// A back-channel logout the app refused is a test failure to explain: say why.
provider.on('backchannel.error', (_ctx, err) =>
  process.stderr.write(`backchannel logout failed: ${err.message} ${err.cause ?? ''}\n`),
);

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'GET' && req.url === '/_test/counters') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(counters));
    return;
  }
  callback(req, res);
});
// The provider logs notices to stdout; a reader that went away must not stop it.
process.stdout.on('error', () => {});
const printedKey =
  process.env.OIDC_PRINT_SIGNING_KEY === '1'
    ? ` key=${privateKey.export({ type: 'pkcs1', format: 'der' }).toString('base64')}`
    : '';
process.stdout.write(`ready ${issuer}${printedKey}\n`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
