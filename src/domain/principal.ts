/** Who is calling: the operator (the global API key) or one instance (its token). */
export type Principal =
  { readonly role: 'admin' } | { readonly role: 'instance'; readonly instanceId: string };
