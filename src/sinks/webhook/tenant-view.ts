/**
 * What an instance token may learn about its deliveries. The receiver's answer body stays with the admin:
 * shown to whoever sets the URL, it turns the gateway into a reader of other hosts' error pages (with a
 * URL pointing at an internal service, a port scanner that reads banners). The status code stays: that
 * much the tenant needs to fix its receiver.
 */
export function deliveryErrorForTenant(error: string | null): string | null {
  // The sender writes "HTTP <status>: <body excerpt>", possibly behind a prefix ("attempts exhausted: ").
  return error === null ? null : error.replace(/(HTTP \d{3}):[\s\S]*$/, '$1');
}
