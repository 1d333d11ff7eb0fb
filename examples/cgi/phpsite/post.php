<?php
// Echoes a posted field and sets a cookie; php-cgi reads the body from stdin.
setcookie('seen', 'yes');
header('Content-Type: text/plain');
echo 'posted: ', isset($_POST['field']) ? $_POST['field'] : '(nothing)', "\n";
