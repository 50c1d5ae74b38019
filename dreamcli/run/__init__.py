"""The run layer: one way from a request to pictures, under the CLI, the page and Ray.

parse (``cli/``, ``web/``) -> ``recipe.Recipe`` (model, preset, typed values,
layers, classes) -> ``Recipe.resolve`` (final ``Settings``, once) ->
``session.Runtime.open`` (the network loaded, its run options, its metadata)
-> a job (``Session.dream_files``, or a job of ``dreamcli.jobs``) -> pictures.

Nothing here knows Click: a bad request is one ``SettingsError`` whose ``key``
names the setting, which the CLI turns into its flag and the page into its field.
``cluster`` runs the same session on a Ray cluster.
"""
