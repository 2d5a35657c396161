"""The engine: what an order needs next (planner, policies), the one durable step (Stepper),
and the daemon that claims due orders and steps them."""
