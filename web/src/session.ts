// Who is logged in and what they may do: the same rule dend applies (global role, per-VM
// grants, operator on VMs one owns), so the page hides what the API would refuse.

import type { Vm } from './api';

/** A role, lowest first. */
export type Role = 'viewer' | 'operator' | 'admin';

/** The logged-in user, from /api/v1/session. */
export interface Session {
  user: string;
  role: Role | null;
  grants: Record<string, Role>;
  csrf: string | null;
}

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/** The higher of two roles. */
export function maxRole(a: Role | null | undefined, b: Role | null | undefined): Role | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return RANK[a] >= RANK[b] ? a : b;
}

/** The session's role on one VM. */
export function roleOn(s: Session, vm: Pick<Vm, 'id' | 'owner'>): Role | null {
  const owned: Role | null = vm.owner === s.user ? 'operator' : null;
  return maxRole(maxRole(s.role, s.grants[vm.id]), owned);
}

/** Whether `have` is at least `need`. */
export function atLeast(have: Role | null, need: Role): boolean {
  return have !== null && RANK[have] >= RANK[need];
}

/** Whether the session may operate the VM (start, stop, console, delete...). */
export function canOperate(s: Session, vm: Pick<Vm, 'id' | 'owner'>): boolean {
  return atLeast(roleOn(s, vm), 'operator');
}

/** Whether the session may create VMs. */
export function canCreate(s: Session): boolean {
  return atLeast(s.role, 'operator');
}

/** Whether the session is an admin. */
export function isAdmin(s: Session): boolean {
  return s.role === 'admin';
}
