/**
 * Workspace plans load their cloud requirements (`GET /wham/config/bundle`) before a login
 * completes (spec C.3): five attempts with doubling, jittered gaps. The plans are the ones whose
 * accounts are workspaces administered by an organisation.
 */
export const WORKSPACE_PLANS: ReadonlySet<string> = new Set([
  'team',
  'business',
  'self_serve_business_prolite',
  'self_serve_business_usage_based',
  'enterprise',
  'enterprise_cbp_automation',
  'enterprise_cbp_usage_based',
  'ent26',
  'edu',
  'edu_plus',
  'edu_pro',
]);

export const CLOUD_CONFIG_ATTEMPTS = 5;

export function cloudConfigFailure(reason: string): string {
  return `failed to load workspace requirements: cloud config: request failed (${reason})`;
}
