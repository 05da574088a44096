"""Apps on top of a run: the HTML report, the data-cleaning page, deployment exports and the model server.

    report.py      write_report(run_dir): one self-contained report.html that explains the run
    compare.py     write_comparison(run_dirs): two or more runs side by side
    run_files.py   the run directory's files read as untrusted input (types, encodings, contained plots)
    templates.py   Jinja2 pages with autoescape; the Content-Security-Policies
    durable.py     fsynced writes and crash-safe moves (the cleaner's journal and moves)
    clean.py       Cleaner: items ordered by loss; relabel / remove, apply (a log, moved files) and undo
    deploy_run.py  export_run: ONNX / TorchScript / OpenVINO files, their check and model_card.md
    batching.py    MicroBatcher: concurrent requests predicted in one model call
    uploads.py     /predict's body streamed within the limits (needs unfreeze[serve])
    serve.py       create_app / serve: the upload page and the /predict API (needs unfreeze[serve])
    clean_app.py   the cleaning page's FastAPI app (needs unfreeze[serve])
    pages/         the pages' HTML, JavaScript and CSS (no build step, no CDN)

This package sits above inference, train and runs, and below the command line. The modules that need
FastAPI are not imported here, so the report and exports work without the `serve` extra.
"""

from unfreeze.apps.errors import AppError

__all__ = ["AppError"]
