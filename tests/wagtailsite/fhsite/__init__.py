"""Pages, a form and settings added to a site made by `wagtail start`: what the tests ask for and check."""
