"""E-mail intake: parse and clean inbound mail, thread it onto tickets, import files, mbox and Maildir."""
