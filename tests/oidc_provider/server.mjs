// The OpenID provider keymint's tests sign in through (console single sign-on): node-oidc-provider
// with the authorization code flow for one confidential client, PKCE required, loopback only.
//
// Settings (environment):
//   PORT                  port on 127.0.0.1; 0 (default) picks a free one
//   OIDC_CLIENT_ID        the client keymint uses (default keymint-console)
//   OIDC_CLIENT_SECRET    its secret (default a fixed test value)
//   OIDC_REDIRECT_URIS    space- or comma-separated redirect URIs (required)
//   OIDC_ACCOUNTS_FILE    JSON file: [{"sub"?, "email", "email_verified", "name"?}];
//                         read at every sign-in, so a test may rewrite it between sign-ins
//   OIDC_ACCOUNTS         the same JSON inline, used when no file is given
//   OIDC_CLAIMS_IN_ID_TOKEN=1  put email/profile claims in the ID token too (default: only
//                         in userinfo, as the OIDC spec does for the code flow)
// Prints one line "listening <issuer>" on stdout when ready.
//
// The sign-in page is node-oidc-provider's development interaction: a form with `login` and
// `password`; the login name is the account's subject (`sub`, default its email) and any
// password works; an unknown login ends in the provider's error page. Consent is granted implicitly for the one client (first-party).
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const clientId = process.env.OIDC_CLIENT_ID || 'keymint-console';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'keymint-console-test-secret-0123456789';
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '').split(/[\s,]+/).filter(Boolean);
if (redirectUris.length === 0) {
  console.error('OIDC_REDIRECT_URIS is required (space- or comma-separated)');
  process.exit(2);
}
const scopes = ['openid', 'email', 'profile'];

function accounts() {
  const text = process.env.OIDC_ACCOUNTS_FILE
    ? readFileSync(process.env.OIDC_ACCOUNTS_FILE, 'utf8')
    : (process.env.OIDC_ACCOUNTS || '[]');
  return JSON.parse(text);
}

function findAccount(_ctx, id) {
  const account = accounts().find((a) => (a.sub ?? a.email) === id);
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      const claims = { sub: id, email: account.email,
                       email_verified: Boolean(account.email_verified) };
      if (account.name) claims.name = account.name;
      return claims;
    },
  };
}

// A fresh signing key per run: no development key shipped with the library is used.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'test-1' };

const server = createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'client_secret_basic',
      scope: scopes.join(' '),
    }],
    scopes,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: process.env.OIDC_CLAIMS_IN_ID_TOKEN !== '1',
    findAccount,
    jwks: { keys: [jwk] },
    cookies: { keys: [clientSecret] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    // First-party client: consent is implied, so a sign-in is one login form.
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId,
                                                  accountId: session.accountId });
      grant.addOIDCScope(scopes.join(' '));
      grant.addOIDCClaims(['email', 'email_verified', 'name']);
      await grant.save();
      return grant;
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>oidc error</title><h1>${out.error}</h1>`
        + `<p>${String(out.error_description || '').replace(/[<>&"]/g, '')}</p>`;
    },
  });
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});

// A test provider keeps nothing worth a graceful close (idle keep-alive connections would
// hold server.close() open): stop at once.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
