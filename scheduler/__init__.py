"""The fairness scheduler: who is awake on which device. A pure decision core, no I/O."""
