// Registered tunnels by subdomain and by id.

/** What the registry keeps: a tunnel's name and id. */
export interface Registered {
  /** The subdomain it holds. */
  readonly subdomain: string;
  /** Its opaque id. */
  readonly id: string;
}

/** The server's tunnels: who holds which subdomain, and which id is whose. */
export class Registry<Session extends Registered> {
  #byName = new Map<string, Session>();
  #byId = new Map<string, Session>();

  /** Number of tunnels registered. */
  get size(): number {
    return this.#byName.size;
  }

  /** The session holding `subdomain`, if any. */
  get(subdomain: string): Session | undefined {
    return this.#byName.get(subdomain);
  }

  /** The session with tunnel id `id`, if any. */
  byId(id: string): Session | undefined {
    return this.#byId.get(id);
  }

  /** Every registered session. */
  sessions(): IterableIterator<Session> {
    return this.#byName.values();
  }

  /** Registers a session under its subdomain and id. */
  add(session: Session): void {
    this.#byName.set(session.subdomain, session);
    this.#byId.set(session.id, session);
  }

  /** Removes a session, if it is still the one registered under its subdomain. */
  remove(session: Session): void {
    if (this.#byName.get(session.subdomain) === session) this.#byName.delete(session.subdomain);
    if (this.#byId.get(session.id) === session) this.#byId.delete(session.id);
  }
}
