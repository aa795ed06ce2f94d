// Small shared pieces: the hooks that connect pages to the route and the live state, form
// fields that show dend's message at the right field, state badges and the confirm dialog.

import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api';
import type { Live } from './live';
import { parse, type Route } from './route';

/** The current hash route. */
export function useRoute(): Route {
  const [route, setRoute] = useState(parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Re-renders on every change of the live state. */
export function useLive(live: Live): Live {
  const [, setTick] = useState(0);
  useEffect(() => live.subscribe(() => setTick((t) => t + 1)), [live]);
  return live;
}

/** Loads `f()` and reloads it when `deps` change; `reload` refreshes by hand. */
export function useLoad<T>(f: () => Promise<T>, deps: unknown[]): { data?: T; error?: string; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    f().then(
      (data) => live && setState({ data }),
      (e) => live && setState({ error: message(e) }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  return { ...state, reload: () => setN((x) => x + 1) };
}

/** The message of an error, for people. */
export function message(e: unknown): string {
  if (e instanceof ApiError || e instanceof Error) return e.message;
  return String(e);
}

/** `{field: message}` when `e` is dend's complaint about one field (the message without the
 *  field name dend puts in front), else null. */
export function fieldError(e: unknown): Record<string, string> | null {
  if (!(e instanceof ApiError) || !e.field) return null;
  const prefix = e.field + ': ';
  return { [e.field]: e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message };
}

/** Runs changes against the API: dend's complaint about a field lands in `errors` under the
 *  field's name, any other failure in `error`; `run` says whether it worked. */
export function useAction(): {
  errors: Record<string, string>;
  error: string | null;
  run: (f: () => Promise<unknown>) => Promise<boolean>;
} {
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const run = async (f: () => Promise<unknown>) => {
    setErrors({});
    setError(null);
    try {
      await f();
      return true;
    } catch (e) {
      const at = fieldError(e);
      if (at) setErrors(at);
      else setError(message(e));
      return false;
    }
  };
  return { errors, error, run };
}

/** A labelled form field with its error below. */
export function Field(props: { label: string; error?: string; hint?: string; children: ComponentChildren }) {
  return (
    <label class={'field' + (props.error ? ' invalid' : '')}>
      <span class="label">{props.label}</span>
      {props.children}
      {props.error ? (
        <span class="error" role="alert">
          {props.error}
        </span>
      ) : props.hint ? (
        <span class="hint">{props.hint}</span>
      ) : null}
    </label>
  );
}

/** A VM state as a coloured badge. */
export function StateBadge(props: { state: string }) {
  return <span class={`badge state-${props.state}`}>{props.state}</span>;
}

/** An error line (or nothing). */
export function ErrorLine(props: { error?: string | null }) {
  return props.error ? (
    <p class="error-line" role="alert">
      {props.error}
    </p>
  ) : null;
}

/** A modal asking to confirm something; `onAnswer(true)` on yes. */
export function Confirm(props: {
  title: string;
  children: ComponentChildren;
  yes: string;
  danger?: boolean;
  onAnswer: (yes: boolean) => void;
}) {
  useEffect(() => {
    const esc = (e: KeyboardEvent) => e.key === 'Escape' && props.onAnswer(false);
    addEventListener('keydown', esc);
    return () => removeEventListener('keydown', esc);
  }, [props.onAnswer]);
  return (
    <div class="modal-back" onClick={() => props.onAnswer(false)}>
      <div class="modal" role="dialog" aria-modal="true" aria-label={props.title} onClick={(e) => e.stopPropagation()}>
        <h3>{props.title}</h3>
        <div class="modal-body">{props.children}</div>
        <div class="modal-actions">
          <button type="button" onClick={() => props.onAnswer(false)}>
            Cancel
          </button>
          <button type="button" class={props.danger ? 'danger' : 'primary'} onClick={() => props.onAnswer(true)}>
            {props.yes}
          </button>
        </div>
      </div>
    </div>
  );
}
