"""Running several nodes as one (KEFU_BROKER_URL): see docs/cluster.md.

* `member.py`: this node's part: heartbeat, the lease, events to the stream,
  orders from the leader, frames to and from other nodes;
* `leader.py`: the desk of the whole cluster, on the node holding the lease,
  with `placement.py` (orders to the node holding each socket), `rebuild.py`
  (a new leader re-announces every live socket), `stream.py` (reading the
  event stream) and `status.py` (the cluster's status);
* `wire.py`: what crosses the broker; `outbox.py`: ordered, retried sending.
"""
