/**
 * Flock's deterministic cores (spec: flock.md): the scheduling rules of
 * Hyperswarm as plain state machines in the quinn-proto manner. No
 * sockets, no timers, no Math.random, no Effect inside: time comes in as
 * `now` (ms), randomness through an injected `random()` (uniform in
 * [0, 1)), work goes out as tagged outputs (`Data.TaggedEnum`). The actors
 * own one core each and do the I/O.
 *
 * One file per concern:
 * - `constants.ts`: every constant of §14 (plus Flock's own, marked).
 * - `peer-info.ts`: `PeerInfo` (§9.2, §13): attempts, priority, flags, topics.
 * - `retry.ts`: `BulkTimer`, `RetryTimer` (§9.3): S / M / L / X batches.
 * - `queue.ts`: `DialQueue` (§9.5): shuffled priority queue.
 * - `dial-policy.ts`: pure should-dial / retry / accept / relay rules.
 * - `dedup.ts`: the duplicate-connection tie-break (§10).
 * - `swarm.ts`: `SwarmCore`, the dial-queue actor's state (peers, queue,
 *   retries, limits, dedup, bans, GC, flush).
 * - `discovery.ts`: `TopicDiscoveryCore`, one topic's refresh cycle (§7).
 *
 * How an actor drives a core (the same loop for both stateful cores):
 *
 *     loop:
 *       msg  <- mailbox, or a timeout at core.nextDeadline()
 *       now  <- Clock
 *       feed msg as the matching input (`handle*`, a command), or
 *         core.handleTimeout(now) when the deadline passed
 *       for out of core.drain(): execute it (below)
 *       (re-read nextDeadline() after every input: any input may move it)
 *
 * The dial-queue actor owns one `SwarmCore` (options: our public key, the
 * limits, backoffs/jitter, `relayConfigured`, a seeded or real `random`).
 * Inputs: `handlePeer` (from the discovery actors), `joinTopic` /
 * `leaveTopic`, `joinPeer` / `leavePeer`, `banPeer`, `setReconnect`,
 * `handleNetworkChange` / `handleNetworkUpdate` (DHT events),
 * `screenHandshake` + `handleFirewallRejected` (the server's firewall
 * hook), `handleInbound` (the server's connection hook; pass a staleness
 * probe reading the existing stream's raw byte counters), the per-dial
 * reports `handleDialStarted` / `handleDialFirewalled` / `handleOpened` /
 * `handleClosed`, `suspend` / `resume` / `destroy`, `beginFlush`.
 * Outputs and what to do:
 * - `Dial { id, peer, relayAddresses, forceRelay }`: fork the dial: ask the
 *   user firewall (null payload); refused → `handleDialFirewalled(id)`;
 *   else `handleDialStarted(id)` and, only if it returned true,
 *   `dht.connect(peer.publicKey, { relayAddresses, relayThrough:
 *   relayThroughFor(option, forceRelay, dht.randomized) })`; report
 *   `handleOpened(id)` on open and `handleClosed(id, failure)` on close
 *   (failure = the error's code and message, used for §9.8 and
 *   `peer.lastError`).
 * - `Destroy { id, reason }`: destroy that stream (or cancel that dial) with
 *   the typed reason; its close is then reported as usual.
 * - `KeepAlive { id }`: `stream.sendKeepAlive()`.
 * - `Connection { id, peer, direction }`: hand the stream to the
 *   application (`connection` event / the Effect Stream).
 * - `Update`: emit `update`. `Ban { peer, reason }`: emit `ban`
 *   (`Peer is firewalled` for reason "firewalled"). `Topic { peer, topic }`:
 *   the PeerInfo's `topic` event.
 * - `Flushed { flush, result }`: settle the `flush()` whose id
 *   `beginFlush` returned (after the actor awaited every discovery's
 *   `flushed()`).
 * - `RefreshTopics`: tell every discovery actor to refresh now.
 *
 * Each topic-discovery actor owns one `TopicDiscoveryCore` (options: the
 * topic, `random`, `isConnected` answering from the dial-queue actor's
 * connection map, `suspended`, `waitForPredecessor` when an older
 * discovery of the topic is still tearing down, the first `limit`).
 * Inputs: `addHandle` / `refreshHandle` / `destroyHandle` (join and the
 * handle API), `refresh` (network change, resume), `flushed`,
 * `handlePredecessorDone`, `handleListened`, `handleReply`,
 * `handleQueryDone`, `handleUnannounced`, `suspend` / `resume` / `destroy`.
 * Refresh requests return a `RefreshTicket`: `Pending { cycle }` settles
 * with the `RefreshSettled { cycle, ok }` output, `Settled` at once,
 * `Rejected` maps to the reference's errors (`ERR_DISCOVERY_DESTROYED`,
 * `ERR_NO_MODE`). Outputs and what to do:
 * - `Listen { cycle }`: await the swarm's `listen()`, then
 *   `handleListened(cycle, ok)`.
 * - `Query { cycle, kind, clear, closestNodes }`: run `dht.announce` (with
 *   the server's relay addresses and `clear`), `dht.lookupAndUnannounce` or
 *   `dht.lookup`; pass every reply's peers through `handleReply(cycle,
 *   peers)` and send what it returns to the dial-queue actor
 *   (`handlePeer(topic, peer)`); end with `handleQueryDone(cycle, { ok,
 *   closestNodes })`, also after a cancel.
 * - `CancelQuery { cycle }`: destroy that query.
 * - `Unannounce { closestNodes }`: `dht.unannounce(topic, keyPair, {
 *   closestNodes, onlyClosestNodes: true, force: true })`, then
 *   `handleUnannounced()` whatever the outcome.
 * - `RefreshSettled { cycle, ok }`: settle the waiters of that cycle.
 * - `Leave`: the last handle is gone: leave the topic (the swarm calls
 *   `destroy`, tells the dial-queue actor `leaveTopic`, removes the
 *   discovery from its map once `TeardownDone { reason: "destroy" }`).
 * - `TeardownDone { reason }`: settle `destroy()` / `suspend()`.
 *
 * Beyond the reference, for peers that join together: the discovery core
 * runs one follow-up lookup shortly after its first client-mode cycle
 * (`FOLLOW_UP_DELAY` + jitter), and marks `mutual` in its `handleReply`
 * output every peer found while our own record is on the DHT (server mode,
 * or an unannounce still pending): such a peer may be dialling us at the
 * same moment. The owner passes them on with `handlePeer` unchanged. Both
 * sides dial at once; the swarm core applies the loser's hold to the side
 * whose dial would lose the §10 tie-break (the smaller key): when its
 * outbound connection to a mutual peer opens, it is kept from the
 * application (phase "on-hold", no `Connection`, not in `connections`, the
 * dial slot freed) for `LOSER_HOLD` (150 ms) once a handshake from that
 * peer's key has reached our server (`noteHandshake`: it is dialling us),
 * else for `LOSER_HOLD_FLOOR` (30 ms: the winner, if it is dialling us,
 * destroys our connection right after the header that opened it, and that
 * DESTROY arrives within its processing time), a deadline of the ordinary
 * `nextDeadline` / `handleTimeout`. The winner's inbound connection
 * arriving meanwhile replaces it (§10), the winner closing it (its dial was
 * under way) ends it, both without the application ever seeing it;
 * otherwise it is surfaced when the hold ends. The winner never holds. So
 * dials from the join phase, from `refresh()` and from later lookups are
 * covered alike, and a pair where only one side dials pays at most the
 * hold, after the connection opened.
 *
 * The remaining pieces (`PeerInfo`, `RetryTimer`, `DialQueue`, the
 * policies, the dedup rule) are used by `SwarmCore` and exported for
 * tests and for owners that need a single rule.
 */
export * from "./constants.js"
export * from "./dedup.js"
export * from "./dial-policy.js"
export * from "./discovery.js"
export * from "./peer-info.js"
export * from "./queue.js"
export * from "./retry.js"
export * from "./swarm.js"
