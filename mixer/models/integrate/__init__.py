"""Integration of learned vector fields: the solver table, the Runge-Kutta steps, and the
rollouts whose reverse passes are written by hand (routed experts, CAVIA's sensitivities,
NCF's Taylor field) beside the torchdiffeq path for adaptive solvers."""
