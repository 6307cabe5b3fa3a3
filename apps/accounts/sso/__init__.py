"""Single sign-on with Microsoft Entra ID (or another OpenID Connect provider), docs/sso.md.

- `config`: the settings, read at call time (tests change them per test).
- `client`: the one module that imports msal: the authorization code flow with PKCE and the provider's metadata.
- `tokens`: Pareto's own check of the ID token (msal does not verify it): signature against the JWKS, iss, aud,
  exp/nbf, tid, nonce.
- `graph`: Microsoft Graph, for the groups of a user whose token carries the groups overage claim.
- `services`: claims -> `Identity` (roles from app roles, teams from group mappings), the mapping writes, and the
  security audit events of refused sign-ins.
- `views`: sign-in, callback, sign-out, and the admin pages for group -> team mappings.
"""
