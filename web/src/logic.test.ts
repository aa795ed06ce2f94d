import { describe, expect, it } from 'vitest';
import { toApiError } from './api';
import { fieldError } from './ui';
import type { DenEvent, Vm } from './api';
import { linePath, niceMax } from './chart';
import { ago, bytes, mib, percent } from './format';
import { backoff } from './live';
import { href, parse } from './route';
import { atLeast, canCreate, canOperate, maxRole, roleOn, type Session } from './session';
import { check, emptyForm, toSpec } from './validate';
import { actionsFor, countByState, effectOf, filterVms, isDestructive, remove, upsert } from './vms';

function vm(name: string, state = 'running', extra: Partial<Vm> = {}): Vm {
  return {
    id: 'id-' + name,
    owner: 'alice',
    state,
    engine: 'qemu',
    created: 0,
    updated: 0,
    spec: { name, image: 'base', kind: 'dev', cpus: 1, memory_mib: 512, restart: 'on-failure', autostart: false, nics: [], ports: [] },
    nics: [{ network: 'default', mac: 'm', ip: '10.0.0.' + name.length, tap: 't' }],
    ...extra,
  };
}

function ev(kind: string, target: string, seq = 1): DenEvent {
  return { seq, time: 0, user: 'u', kind, target, detail: '' };
}

describe('API errors', () => {
  it("keeps dend's code, message and field", () => {
    const e = toApiError(400, { code: 'invalid_field', message: 'cpus: too many', field: 'cpus' });
    expect([e.status, e.code, e.message, e.field]).toEqual([400, 'invalid_field', 'cpus: too many', 'cpus']);
  });
  it("puts a field's message at the field, without the field name in front", () => {
    const e = toApiError(400, { code: 'invalid_field', message: 'disk_mib: 64 MiB is too small', field: 'disk_mib' });
    expect(fieldError(e)).toEqual({ disk_mib: '64 MiB is too small' });
    expect(fieldError(toApiError(409, { code: 'conflict', message: 'busy' }))).toBeNull();
    expect(fieldError(new Error('x'))).toBeNull();
  });
  it('copes with bodies that are not JSON errors', () => {
    const e = toApiError(502, undefined);
    expect(e.code).toBe('http_502');
    expect(e.message).toContain('502');
    expect(e.field).toBeUndefined();
  });
});

describe('roles', () => {
  const s: Session = { user: 'bob', role: 'viewer', grants: { 'id-web2': 'operator' }, csrf: null };
  it('takes the highest of global role, grant and ownership', () => {
    expect(roleOn(s, vm('web1'))).toBe('viewer');
    expect(roleOn(s, vm('web2'))).toBe('operator');
    expect(roleOn(s, vm('web3', 'running', { owner: 'bob' }))).toBe('operator');
    expect(roleOn({ ...s, role: null, grants: {} }, vm('web1'))).toBeNull();
  });
  it('lets viewers see but not operate or create', () => {
    expect(canOperate(s, vm('web1'))).toBe(false);
    expect(canOperate(s, vm('web2'))).toBe(true);
    expect(canCreate(s)).toBe(false);
    expect(canCreate({ ...s, role: 'operator' })).toBe(true);
    expect(maxRole('admin', 'viewer')).toBe('admin');
    expect(atLeast(null, 'viewer')).toBe(false);
  });
});

describe('the VM list', () => {
  it('turns events into refetches and removals', () => {
    expect(effectOf(ev('vm.started', 'web1'))).toEqual({ refetch: 'web1' });
    expect(effectOf(ev('vm.deleted', 'web1'))).toEqual({ remove: 'web1' });
    expect(effectOf(ev('user.login', 'alice'))).toBeNull();
    expect(effectOf(ev('vm.console_attached', 'web1'))).toBeNull();
  });
  it('upserts in name order and removes', () => {
    let list = [vm('b'), vm('d')];
    list = upsert(list, vm('c'));
    list = upsert(list, vm('b', 'stopped'));
    expect(list.map((v) => `${v.spec.name}:${v.state}`)).toEqual(['b:stopped', 'c:running', 'd:running']);
    expect(remove(list, 'c').map((v) => v.spec.name)).toEqual(['b', 'd']);
  });
  it('searches every word and filters by state', () => {
    const list = [vm('web1'), vm('db1', 'stopped'), vm('web2', 'stopped', { owner: 'carol' })];
    expect(filterVms(list, 'web', '').map((v) => v.spec.name)).toEqual(['web1', 'web2']);
    expect(filterVms(list, 'web carol', '').map((v) => v.spec.name)).toEqual(['web2']);
    expect(filterVms(list, '', 'stopped').map((v) => v.spec.name)).toEqual(['db1', 'web2']);
    expect(filterVms(list, '10.0.0.3', '').map((v) => v.spec.name)).toEqual(['db1']);
    expect(countByState(list)).toEqual({ running: 1, stopped: 2 });
  });
  it('offers only actions that fit the state', () => {
    expect(actionsFor('running')).toContain('stop');
    expect(actionsFor('running')).not.toContain('delete');
    expect(actionsFor('stopped')).toContain('delete');
    expect(actionsFor('creating')).toEqual([]);
    expect(isDestructive('delete') && isDestructive('stop') && !isDestructive('start')).toBe(true);
  });
});

describe('the create form', () => {
  const limits = { max_cpus: 2, max_memory_mib: 4096 };
  it('accepts a good form and builds the API body', () => {
    const f = { ...emptyForm('base'), name: 'web1', users: 'dev, ops', keys: 'ssh-ed25519 AAAAC3Nza me@x\n', disk: '2048' };
    expect(check(f, limits)).toEqual({});
    expect(toSpec(f)).toEqual({
      name: 'web1',
      image: 'base',
      cpus: 1,
      memory_mib: 512,
      disk_mib: 2048,
      nics: [{ network: 'default' }],
      first_boot: { users: ['dev', 'ops'], ssh_keys: ['ssh-ed25519 AAAAC3Nza me@x'] },
    });
  });
  it('names the field of each problem with the API field names', () => {
    const f = { ...emptyForm(''), name: 'Web_1', cpus: '3', memory: '10', disk: 'x', users: 'root', network: '' };
    const e = check(f, limits);
    expect(Object.keys(e).sort()).toEqual(['cpus', 'disk_mib', 'first_boot', 'image', 'memory_mib', 'name']);
    expect(e.cpus).toContain('1 to 2');
    expect(toSpec({ ...f, disk: '' }).nics).toEqual([]);
    expect(check({ ...emptyForm('base'), name: 'ok', keys: 'not a key' }, limits).first_boot).toContain('own line');
    expect(check({ ...emptyForm('base'), name: 'web-' }, limits).name).toBeDefined();
  });
});

describe('formatting, routes, charts, reconnects', () => {
  it('formats sizes and times', () => {
    expect(bytes(512)).toBe('512 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(mib(2048)).toBe('2.0 GiB');
    expect(bytes(-1)).toBe('-');
    expect(ago(100, 130)).toBe('30 s ago');
    expect(ago(0, 7200)).toBe('2 h ago');
    expect(percent(12.345)).toBe('12.3 %');
  });
  it('parses and builds hash routes', () => {
    expect(parse('#/vms/web1')).toEqual({ page: 'vm', name: 'web1', tab: 'summary' });
    expect(parse('#/vms/web1/console')).toEqual({ page: 'vm', name: 'web1', tab: 'console' });
    expect(parse('#/nonsense')).toEqual({ page: 'dashboard' });
    expect(parse('')).toEqual({ page: 'dashboard' });
    for (const h of ['#/vms', '#/vms/a%20b/graphs', '#/users', '#/create', '#/tokens', '#/keys'])
      expect(href(parse(h))).toBe(h);
  });
  it('scales charts to round numbers and clamps lines', () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(7)).toBe(10);
    expect(niceMax(130)).toBe(200);
    expect(niceMax(4.2e9)).toBe(5e9);
    expect(linePath([], 100, 10, 1)).toBe('');
    expect(linePath([0, 1, 2], 100, 10, 1)).toBe('M0.0,10.0L50.0,0.0L100.0,0.0');
  });
  it('backs off up to five seconds', () => {
    expect([0, 1, 2, 3, 4, 10].map(backoff)).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
  });
});
