// Hash routes: `#/vms/web1` and so on, so a reload keeps the page and no server route is needed.

/** A page and its parameter. */
export type Route =
  | { page: 'dashboard' }
  | { page: 'vms' }
  | { page: 'vm'; name: string; tab: string }
  | { page: 'create' }
  | { page: 'users' }
  | { page: 'tokens' }
  | { page: 'keys' };

/** Parses `location.hash`. Unknown routes go to the dashboard. */
export function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case 'vms':
      if (parts[1]) return { page: 'vm', name: parts[1], tab: parts[2] ?? 'summary' };
      return { page: 'vms' };
    case 'create':
      return { page: 'create' };
    case 'users':
      return { page: 'users' };
    case 'tokens':
      return { page: 'tokens' };
    case 'keys':
      return { page: 'keys' };
    default:
      return { page: 'dashboard' };
  }
}

/** The hash of a route. */
export function href(r: Route): string {
  switch (r.page) {
    case 'vm':
      return `#/vms/${encodeURIComponent(r.name)}${r.tab && r.tab !== 'summary' ? '/' + r.tab : ''}`;
    case 'dashboard':
      return '#/';
    default:
      return `#/${r.page}`;
  }
}
