"""A Django site on MySQL/MariaDB for the MySQL tests: FORKHOOKS_MYSQL_DSN, FORKHOOKS_MYSQL_DRIVER."""
