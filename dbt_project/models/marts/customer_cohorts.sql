select
    date_trunc('month', signup_date) as cohort_month,
    count(*) as customers,
    sum(lifetime_value) as lifetime_value
from {{ ref('customer_lifetime_value') }}
join {{ ref('dim_customers') }} using (customer_id)
group by 1
