"""The report: figures and the HTML page, built only from the files a run wrote."""
