"""The validation gate's arithmetic: boundaries hold exactly, despite binary floating point."""
from trustmesh.contracts.rules.tasks import gate_passes


def test_a_drop_of_exactly_the_allowed_amount_passes() -> None:
    assert 0.90 - 0.85 > 0.05  # what plain float arithmetic would have rejected
    assert gate_passes(0.85, 0.90, min_accuracy=0.0, max_drop=0.05)


def test_a_larger_drop_or_a_low_accuracy_is_rejected() -> None:
    assert not gate_passes(0.849, 0.90, min_accuracy=0.0, max_drop=0.05)
    assert not gate_passes(0.49, None, min_accuracy=0.5, max_drop=1.0)
    assert gate_passes(0.5, None, min_accuracy=0.5, max_drop=0.0)
