"""Which operations ``training.detector.quantize --keep-float`` leaves in float."""

from training.detector.quantize import worst_layers


def _row(name: str, mse: float, scale: float) -> dict[str, str]:
    return {"tensor_name": name, "mean_squared_error": str(mse), "scale": str(scale)}


def test_layers_are_ranked_by_error_in_quantisation_steps_not_in_value():
    rows = [
        _row("big values, 0.5 steps off", mse=25.0, scale=10.0),
        _row("small values, 2 steps off", mse=0.04, scale=0.1),
        _row("1 step off", mse=1.0, scale=1.0),
        _row("not quantised", mse=9.0, scale=0.0),
    ]
    assert worst_layers(rows, 2) == ["small values, 2 steps off", "1 step off"]
    assert worst_layers(rows, 0) == []
    assert worst_layers(rows, 10)[-1] == "not quantised"
