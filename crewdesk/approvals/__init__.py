"""Human approvals for actions above a threshold."""
