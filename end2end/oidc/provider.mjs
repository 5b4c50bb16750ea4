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
//
// Sign-in is the provider's own development form (any password; the login names an account
// below). Nothing here is for production: it is a test peer.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

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

const provider = new Provider(issuer, {
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
  // Tokenless always sends its redirect_uri; never guess one.
  allowOmittingSingleRegisteredRedirectUri: false,
});
provider.proxy = false;

server.on('request', provider.callback());
// The provider logs notices to stdout; a reader that went away must not stop it.
process.stdout.on('error', () => {});
process.stdout.write(`ready ${issuer}\n`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
