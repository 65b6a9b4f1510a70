"""Failover: authenticated heartbeats between members and the traffic-group state machine."""
