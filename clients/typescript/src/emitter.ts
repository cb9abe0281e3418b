/** A small typed event emitter; listeners that throw do not break the client. */
export class Emitter<Events extends { [K in keyof Events]: (arg: never) => void }> {
  readonly #listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Events[K]): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: Events[K]): void {
    this.#listeners.get(name)?.delete(listener);
  }

  protected emit<K extends keyof Events>(name: K, arg: Parameters<Events[K]>[0]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as (a: Parameters<Events[K]>[0]) => void)(arg);
      } catch (e) {
        // An application bug must not break the connection's bookkeeping; report it.
        const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
        if (report) report(e);
        else console.error("@odin-stream/client: a listener threw", e);
      }
    }
  }
}
