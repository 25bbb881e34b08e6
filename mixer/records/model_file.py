"""The layout version of ``model.pt``, shared by the stage that writes it and the one that
reads it. A file of another version is refused, not guessed at."""

MODEL_FORMAT = 2
