"""Which hypotheses of the convergence theorem hold for a given loss, data set and architecture.

The theorem (Diederen, Rauhut & Terstiege 2026): if the loss ℓ is real-analytic and coercive (so Łojasiewicz's
inequality holds and sublevel sets of ℒ are bounded) and the patch operator ``H`` of the data has full column rank
``k_v``, then every gradient-flow trajectory of ``L`` is bounded and converges to a single critical point.
"""

from __future__ import annotations

from dataclasses import dataclass

from lcnflow.model.condition import DataCondition
from lcnflow.model.risk import EmpiricalRisk


@dataclass(frozen=True)
class TheoremCheck:
    """Result of :func:`theorem_hypotheses`.

    Attributes
    ----------
    analytic_loss, coercive_loss : bool or None
        As declared by the loss (``None``: the loss does not declare it).
    data_condition : DataCondition
    covered : bool
        All hypotheses hold: the theorem guarantees convergence to one critical point.
    failures : list of str
        One sentence per hypothesis that fails or is unknown.
    consequence : str
        What follows, in one sentence.
    """

    analytic_loss: bool | None
    coercive_loss: bool | None
    data_condition: DataCondition
    covered: bool
    failures: list[str]
    consequence: str

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "analytic_loss": self.analytic_loss,
            "coercive_loss": self.coercive_loss,
            "data_condition": self.data_condition.to_dict(),
            "covered": self.covered,
            "failures": list(self.failures),
            "consequence": self.consequence,
        }

    def __str__(self) -> str:
        def mark(x):
            return {True: "yes", False: "no", None: "unknown"}[x]

        lines = [
            f"analytic loss: {mark(self.analytic_loss)}; coercive loss: {mark(self.coercive_loss)}; "
            f"data condition (rank H = k_v): {mark(self.data_condition.satisfied)}",
            *[f"  - {f}" for f in self.failures],
            self.consequence,
        ]
        return "\n".join(lines)


def theorem_hypotheses(risk: EmpiricalRisk, data_condition: DataCondition | None = None) -> TheoremCheck:
    """Check the convergence theorem's hypotheses for ``risk`` (loss properties and the data condition).

    Parameters
    ----------
    risk : EmpiricalRisk
    data_condition : DataCondition, optional
        A precomputed :func:`~lcnflow.check_data_condition` result, to avoid recomputing it.
    """
    loss = risk.loss
    cond = data_condition if data_condition is not None else risk.data_condition
    failures = []
    if loss.analytic is not True:
        failures.append(
            f"the loss {loss} is {'not' if loss.analytic is False else 'not declared'} real-analytic, so the "
            "Łojasiewicz inequality behind the convergence proof is not available"
        )
    if loss.coercive is not True:
        failures.append(
            f"the loss {loss} is {'not' if loss.coercive is False else 'not declared'} coercive, so sublevel sets "
            "of the risk need not be bounded"
        )
    if not cond.satisfied:
        failures.append(
            f"the data condition fails (rank H = {cond.rank} < k_v = {cond.final_filter_size}): the risk is flat "
            "along some final-filter directions"
        )
    if risk.arch.is_multichannel:
        failures.append(
            f"the network has channels (architecture.channels {list(risk.arch.channels)}): outside the proved "
            "setting — the convergence theorem is proved for single-channel networks only; the run still "
            "integrates, detects unbounded trajectories (blow-up) and certifies what it reaches"
        )
    covered = not failures
    if covered:
        consequence = (
            "All hypotheses hold: every gradient-flow trajectory is bounded and converges to a single critical point."
        )
    else:
        consequence = (
            "The convergence theorem does not cover this run: the flow may still converge, but boundedness or "
            "convergence to a single point is not guaranteed."
        )
    return TheoremCheck(
        analytic_loss=loss.analytic,
        coercive_loss=loss.coercive,
        data_condition=cond,
        covered=covered,
        failures=failures,
        consequence=consequence,
    )
