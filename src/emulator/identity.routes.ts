/**
 * The emulator's stand-in for login.microsoftonline.com: OpenID metadata and JWKS for the
 * publisher's tenant (so the webhook verifier discovers keys the way it does against Entra), and a
 * client-credentials token endpoint that issues app tokens for the Fulfillment API.
 *
 *   GET  /.well-known/openid-configuration                      (the configured token version)
 *   GET  /:tenantId/.well-known/openid-configuration            (v1)
 *   GET  /:tenantId/v2.0/.well-known/openid-configuration       (v2)
 *   GET  /:tenantId/discovery/keys, /:tenantId/discovery/v2.0/keys
 *   POST /:tenantId/oauth2/token (v1, `resource=`), /:tenantId/oauth2/v2.0/token (v2, `scope=`)
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { MARKETPLACE_APP_ID } from './signing.js';
import type { TokenSigner, TokenVersion } from './signing.js';

export type IdentityRoutesOptions = { signer: TokenSigner };

const TenantParams = Type.Object({ tenantId: Type.String() });

function oauthError(reply: FastifyReply, status: number, error: string, description: string): FastifyReply {
  return reply.code(status).send({ error, error_description: description });
}

export const identityRoutes: FastifyPluginAsyncTypebox<IdentityRoutesOptions> = async (app, { signer }) => {
  const tenant = signer.options.tenantId;

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8'))));
  });

  const unknownTenant = (reply: FastifyReply, tenantId: string): FastifyReply =>
    oauthError(reply, 400, 'invalid_tenant', `tenant ${tenantId} is not known to the emulator (it serves ${tenant})`);

  app.get('/.well-known/openid-configuration', async () => signer.openIdConfiguration());

  const metadata = (version: TokenVersion) =>
    async (req: { params: { tenantId: string } }, reply: FastifyReply) =>
      req.params.tenantId === tenant ? reply.send(signer.openIdConfiguration(version)) : unknownTenant(reply, req.params.tenantId);
  app.get('/:tenantId/.well-known/openid-configuration', { schema: { params: TenantParams } }, metadata('v1'));
  app.get('/:tenantId/v2.0/.well-known/openid-configuration', { schema: { params: TenantParams } }, metadata('v2'));

  const keys = async (req: { params: { tenantId: string } }, reply: FastifyReply) =>
    req.params.tenantId === tenant ? reply.send(signer.jwks()) : unknownTenant(reply, req.params.tenantId);
  app.get('/:tenantId/discovery/keys', { schema: { params: TenantParams } }, keys);
  app.get('/:tenantId/discovery/v2.0/keys', { schema: { params: TenantParams } }, keys);

  const token = (version: TokenVersion) =>
    async (req: { params: { tenantId: string }; body: unknown }, reply: FastifyReply) => {
      const form = (req.body ?? {}) as Record<string, string | undefined>;
      if (form.grant_type !== 'client_credentials') {
        return oauthError(reply, 400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported');
      }
      if (!form.client_id) return oauthError(reply, 400, 'invalid_request', 'client_id is required');
      if (!form.client_secret && !form.client_assertion) {
        return oauthError(reply, 401, 'invalid_client', 'client_secret or client_assertion is required');
      }
      const target = version === 'v2' ? form.scope : form.resource;
      const wanted = version === 'v2' ? `${MARKETPLACE_APP_ID}/.default` : MARKETPLACE_APP_ID;
      if (target !== wanted) {
        return oauthError(reply, 400, 'invalid_scope', `${version === 'v2' ? 'scope' : 'resource'} must be ${wanted}`);
      }
      const issued = await signer.accessToken(form.client_id, req.params.tenantId, version);
      const body: Record<string, unknown> = {
        token_type: 'Bearer',
        expires_in: issued.expiresIn,
        ext_expires_in: issued.expiresIn,
        access_token: issued.token,
      };
      if (version === 'v1') {
        const now = Math.floor(Date.now() / 1000);
        Object.assign(body, {
          expires_in: String(issued.expiresIn),
          ext_expires_in: String(issued.expiresIn),
          expires_on: String(now + issued.expiresIn),
          not_before: String(now),
          resource: MARKETPLACE_APP_ID,
        });
      }
      return reply.send(body);
    };
  app.post('/:tenantId/oauth2/token', { schema: { params: TenantParams } }, token('v1'));
  app.post('/:tenantId/oauth2/v2.0/token', { schema: { params: TenantParams } }, token('v2'));
};
