// Registered tunnels by name (a subdomain, a custom hostname, or `tcp:<port>`), and
// the control sessions that carry them by id.

/** What the registry keeps of a tunnel: the name it holds. */
export interface Registered {
  /** Its name: a subdomain label, a hostname, or `tcp:<port>`. */
  readonly name: string;
}

/** What the registry keeps of a session: its id. */
export interface RegisteredSession {
  /** Its opaque id, named by `attach`. */
  readonly id: string;
}

/** The server's tunnels (who holds which name) and sessions (which id is whose). */
export class Registry<Tunnel extends Registered, Session extends RegisteredSession> {
  #byName = new Map<string, Tunnel>();
  #sessions = new Map<string, Session>();

  /** Number of tunnels registered. */
  get size(): number {
    return this.#byName.size;
  }

  /** The tunnel holding `name`, if any. */
  get(name: string): Tunnel | undefined {
    return this.#byName.get(name);
  }

  /** The session with id `id`, if any. */
  byId(id: string): Session | undefined {
    return this.#sessions.get(id);
  }

  /** Every registered tunnel. */
  tunnels(): IterableIterator<Tunnel> {
    return this.#byName.values();
  }

  /** Every registered session. */
  sessions(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  /** Registers a tunnel under its name. */
  add(tunnel: Tunnel): void {
    this.#byName.set(tunnel.name, tunnel);
  }

  /** Removes a tunnel, if it is still the one registered under its name. */
  remove(tunnel: Tunnel): void {
    if (this.#byName.get(tunnel.name) === tunnel) this.#byName.delete(tunnel.name);
  }

  /** Registers a session under its id. */
  addSession(session: Session): void {
    this.#sessions.set(session.id, session);
  }

  /** Removes a session, if it is still the one under its id. */
  removeSession(session: Session): void {
    if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
  }
}
