"""The hello-world plugin from docs/writing_plugins.md: serves `.echo` files, predicts column x."""

from pathlib import Path

from scorer_core import DataType, Field, Frame, ModelSchema, Runtime, hookimpl


class EchoRuntime(Runtime):
    """Returns input 'x' as the prediction; for docs and tests."""

    name = "echo-scorer"

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return path.suffix == ".echo"

    def load(self, path: Path) -> None:
        self.schema = ModelSchema(
            inputs=[Field("x", DataType.FLOAT64)],
            outputs=[Field("prediction", DataType.FLOAT64)],
        )

    def score(self, batch: Frame):  # typed columns in, same number of rows out
        return {"prediction": batch["x"]}


@hookimpl
def scorer_register_runtimes():
    return [EchoRuntime]
