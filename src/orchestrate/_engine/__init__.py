"""The durable engine (private): replay core, step execution, graph interpreter, runner."""
