"""`python -m textxfer.predict RUN INPUT -o OUTPUT` (also under `accelerate launch`): batch prediction; see textxfer.commands.batch_predict."""
