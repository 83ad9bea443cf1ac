"""agentsim: a simulated metrics agent, a fleet of them, and a load generator (HTTP only)."""
