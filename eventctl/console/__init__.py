"""The web console at ``/ui`` (SPEC §13): server-rendered pages for people, served by ``eventctl serve``.
``console.app.install_console`` adds it to the API's app; ``session`` holds its access rules."""
