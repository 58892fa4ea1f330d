"""Side effects of write tools, keyed by idempotency key: a retried or resumed ticket never repeats one."""
